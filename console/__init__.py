"""trading-console: the full-screen console (``tui``) and the command line (``cli``) over the
``brokers`` library, sharing one way of writing numbers and money (``formatting``) and one
logging set-up (``logs``)."""
