"""The GitHub App shell: webhook intake, routing, dispatch pipeline, slash commands, reporting."""
