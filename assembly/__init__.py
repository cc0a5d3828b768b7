"""The run assembly, above every library package: the config (assembled from the options each layer
declares), the builder that turns it into objects, and the loading of a finished run for evaluation."""
