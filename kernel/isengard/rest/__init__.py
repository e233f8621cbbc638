"""The REST API: Orthanc's routes, JSON shapes and error bodies, one module per family of routes.

Each module is a plugin of the kernel (see ``isengard.plugins.DEFAULT_PLUGINS``) that registers a Quart blueprint
through the same ``register_routes`` hook third-party plugins use.
"""
