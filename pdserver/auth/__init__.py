"""Auth*: who is calling (users, tokens) and what they may do (roles), plus the audit log."""
