"""Stand-ins for third-party modules, put on ``sys.path`` by the tests that need them."""
