"""The operator commands, acting on a deployed stack with the operator's ordinary AWS credentials:
`vtriage send` (push alert files to the intake URL), `vtriage cases` (list the cases) and `vtriage
rollback` (undo a case's actions). Never shipped to Lambda, and apart from the local runner: nothing here
loads `vtriage_local`'s moto stack, and the local runner imports nothing from here (import-linter
contracts in pyproject.toml)."""
