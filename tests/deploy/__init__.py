"""Tests of what ships the gateway: the image, the Kubernetes manifests, dashboards and alerts."""
