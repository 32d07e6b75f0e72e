"""What of a member's points expires when (`GET /v1/members/{id}/expiring`)."""
