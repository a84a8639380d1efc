"""The ``git quilt`` command line (click). The only package that imports click."""
