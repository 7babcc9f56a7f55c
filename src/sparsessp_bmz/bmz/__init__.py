"""BioImage Model Zoo export and validation (imports bioimageio.spec, torch, onnx: load lazily)."""
