"""What runs the pipeline that pipeline.py defines: on this machine with kfp.local (local.py, with docker.py for
``--runner docker`` and log.py for its logs), or on a Kubeflow Pipelines cluster through its API (kfp_api.py,
with kfp_adapter.py for what it needs beyond the kfp SDK's public API). Each gets the pipeline, or the
function that compiles it, from pipeline.py as an argument."""
