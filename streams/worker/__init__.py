"""The worker: the Faust app, the batch step and what runs beside it."""
