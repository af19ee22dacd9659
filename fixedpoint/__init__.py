"""Floor 1, Loihi 2 fixed-point arithmetic (SPEC.md sections 14-15): number formats and fixed-point model files
(formats), the literal int64 statement of one step (literal), the vectorised integer engine (engine), post-training
quantisation (quantize) and the predicted quantisation error (error_model). Imports only `reference`."""
