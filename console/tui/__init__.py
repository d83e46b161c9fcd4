"""The full-screen console (Textual): ``app`` wires the runtime to the screen, ``widgets`` holds
one pane per module, ``screens`` the modal dialogs, ``messages`` what crosses between them, and
``run`` launches it in this process."""
