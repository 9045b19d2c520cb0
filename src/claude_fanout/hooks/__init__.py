"""Claude Code hooks: one module per event, a dispatcher, and the delivery of results.

Everything here runs on the Conductor's tool calls, so it imports only the standard library and
the lean store modules, and fails open: any internal error means exit 0 and no output.
"""
