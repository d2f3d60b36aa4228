"""Test infrastructure: tiny real models, loopback servers and fakes."""
