"""The Flower deployment: the ServerApp and ClientApp that ``flwr run`` starts, an in-process grid that
runs them in one process for tests, and the loopback trial (``python -m deploy.loopback``) that runs a
SuperLink and one SuperNode per site on this machine."""
