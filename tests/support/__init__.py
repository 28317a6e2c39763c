"""Support for the test suite, the benches and the GPU check (all run from the checkout's root, so `tests.support`
imports): checkpoints in the published formats made without a download (`golden`, `checkpoint_files`) and the
shared test data (`shared_data`). It is not part of the product: nothing in `codeformer_core` or `demo` imports it."""
