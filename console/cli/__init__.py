"""The command line (``trading-console``): one module per group of commands, ``main`` ties them.

Each command imports what it needs when it runs, so ``trading-console halt`` starts in a
fraction of a second; only the commands that open a screen (the console itself, ``screenshot``,
``bench``) load the Textual app, and only when they run.
"""
