"""Tests of the admin port: auth, explain, status and the status page."""
