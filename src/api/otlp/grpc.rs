//! OTLP/gRPC: the `opentelemetry.proto.collector.trace.v1.TraceService`
//! served by tonic on its own port, sharing the HTTP route's ingestion path.

use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;

use super::{blocking, experiment_from, prepare, store_prepared};
use crate::api::error::ApiError;
use crate::app::AppState;

struct Service {
    app: AppState,
}

/// gRPC status for an API error, chosen by how OTLP exporters react:
/// UNAVAILABLE is retried with backoff (overload, shutdown, full disk);
/// INVALID_ARGUMENT is not (bad data, and oversize, which a retry cannot
/// fix — RESOURCE_EXHAUSTED would be retried by some exporters).
fn status(e: ApiError) -> tonic::Status {
    let msg = e.message;
    match e.status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
            tonic::Status::invalid_argument(msg)
        }
        StatusCode::NOT_FOUND => tonic::Status::not_found(msg),
        StatusCode::UNAUTHORIZED => tonic::Status::unauthenticated(msg),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
            tonic::Status::unavailable(msg)
        }
        _ => tonic::Status::internal(msg),
    }
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if !self.app.auth.check_grpc(request.metadata()) {
            // tonic calls bypass `api::observe`: refusals are counted here.
            self.app.metrics.record_reject_reason("unauthenticated");
            return Err(tonic::Status::unauthenticated(
                "missing or wrong credentials (send authorization: Bearer <token>)",
            ));
        }
        let app = &self.app;
        let result = async {
            // The same header as over HTTP, read from the call's metadata.
            let headers = request.metadata().clone().into_headers();
            let experiment_id = experiment_from(&headers)?;
            let limits = app.config.limits.clone();
            let req = request.into_inner();
            app.metrics.record_bytes(prost::Message::encoded_len(&req));
            let store = app.store.clone();
            let prepared = blocking(move || prepare(req, &limits, store.codec())).await?;
            store_prepared(app, experiment_id, prepared).await
        }
        .await;
        result.map(tonic::Response::new).map_err(|e| {
            app.metrics.record_reject(&e);
            status(e)
        })
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves.
pub async fn serve(
    app: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limit = app.config.max_body_bytes;
    // tonic decodes a message before the service sees it, so the byte budget
    // cannot be charged per request; bounding concurrent calls instead keeps
    // decoded gRPC uploads under about the same memory as the HTTP budget
    // (each call holds at most one message of `limit` bytes).
    let concurrent = (app.config.ops.max_inflight_bytes / limit.max(1)).clamp(2, 64);
    let svc = TraceServiceServer::new(Service { app })
        .max_decoding_message_size(limit)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tonic::transport::Server::builder()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(concurrent))
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
