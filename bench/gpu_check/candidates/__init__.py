"""CUDA speed-ups the GPU check measures beside the engine's default and the engine does not use: each comes into
`codeformer_core` only with a GPU run in bench/results-cuda.md showing it at least 10% faster end to end at equal
accuracy (bench/README.md, "Candidates")."""
