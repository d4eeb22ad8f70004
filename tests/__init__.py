"""The test suite as one package, so its sub-packages import as ``tests.core``, ``tests.web`` ... and never
shadow ``matteflow.core``/``matteflow.web`` or a library as a top-level ``core``, ``web`` or ``deploy``."""
