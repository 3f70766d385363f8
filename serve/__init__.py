"""Serving a lecture hall (`make hall`): N Streamlit replicas behind HAProxy, two Redis (the shared
compute cache and the store), one RQ worker for the GPU queue, and the cache warm-up. See serve/hall.py."""
