"""The control plane: what people and agents create over the catalog and the blob store.

Services are plain async classes that know nothing of HTTP (``files``,
``artifacts``); route modules (``artifact_routes``) translate requests to
calls of them and back.
"""
