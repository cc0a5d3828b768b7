"""The federation as a Flower app: every site is its own process, only messages cross.

``server_app.py`` (the ServerApp) runs ``server.py``'s round loop, which aggregates with the
project's strategies and writes the run's outputs; ``client_app.py`` (the ClientApp at each site)
runs ``site.py``, the in-process federation restricted to that site. ``node.py`` reads a SuperNode's
node config, ``nodes.py`` finds which node is which site, ``wire.py`` says what a message holds and
how big it is, ``local.py`` runs the apps in one process without a network (tests), and
``loopback.py`` starts a whole deployment on 127.0.0.1 (trials, tests).
"""
