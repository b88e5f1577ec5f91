"""Backups of the app's database (to S3), restores, snapshots of the data volume, recovery of lost nodes."""
