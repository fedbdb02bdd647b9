-- Spans whose inputs or outputs came verbatim from one of their attributes
-- (OpenInference `input.value`, GenAI `gen_ai.input.messages`, Traceloop
-- `traceloop.entity.output`, ...) store that value once, in `inputs` /
-- `outputs`, and name the attribute here; the attribute is put back when
-- the span is read. This keeps OTLP spans about a quarter smaller.
ALTER TABLE spans ADD COLUMN inputs_attr TEXT;
ALTER TABLE spans ADD COLUMN outputs_attr TEXT;
