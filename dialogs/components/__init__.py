"""Dialogs every application reuses: an evidence with photos, the photos prompt, the review of an
application, the contact update. Each is a component (dialogs/engine.py `Component`): a flow
calls it with `Call` or `Loop` and goes on with the value it returns."""
