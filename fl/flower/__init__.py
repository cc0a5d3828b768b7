"""The federation's Flower transport: what crosses between the server and the sites as messages.

``transport.py`` is the server's side of the round loop over a Flower grid; ``site.py`` is one site's
worker, the in-process federation restricted to that site; ``node.py`` reads a SuperNode's node
config, ``nodes.py`` finds which node is which site, and ``wire.py`` says what a message holds and how
big it is. The apps that ``flwr run`` starts, which build a run from its config, are one layer up in
``deploy/``.
"""
