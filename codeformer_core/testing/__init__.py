"""Support for the test suite, the benches and the GPU check, as `numpy.testing` is for numpy's: checkpoints in
the published formats made without a download (`golden`, `checkpoint_files`) and the shared test data
(`shared_data`). Nothing in the engine imports it."""
