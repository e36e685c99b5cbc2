"""greg-suite: the harness (data, models, training, surgery, measurement, runs). It names no pruning method."""
