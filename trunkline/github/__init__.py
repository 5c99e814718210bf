"""The GitHub port (a typing.Protocol returning frozen snapshots) and its PyGithub adapter."""
