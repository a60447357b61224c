"""Tureen's demo: a small signaling app for mediasoup-client v2 browsers (docs/browser.md).

It is the reference example of an application integrating Tureen: it talks to Tureen only
through the public control API and its Python client, `tureen.shared.client.TureenClient`.
"""
