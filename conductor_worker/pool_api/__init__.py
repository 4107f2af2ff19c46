"""The pool agents' REST API: the calls pool agents make, and starting the scripts they run."""
