"""Many captures: the per-capture task on a local pool or a Dask cluster (`run`), the results as
one dataset (`dataset`) and the batch summary (`summary`)."""
