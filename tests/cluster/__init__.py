"""The native CeleryExecutor cluster tier: a package, so its cluster fixture (scope
"package") stops after its last test instead of running through the rest of the session."""
