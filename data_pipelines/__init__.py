"""Scripts around the datasets, run from a checkout: `python -m data_pipelines.prepare` (build a dataset's
array_record files once) and `python -m data_pipelines.usefulness` (linear probes of the synthetic data).
The dataset builders, loaders and transforms themselves are library code: `pkdot_jax.data`."""
