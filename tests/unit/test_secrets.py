from fabfile.config import load_config
from fabfile.vault import mask, secret


def test_secret_is_generated_once_and_private(roles_file):
    cfg = load_config(roles_file)
    first = secret(cfg, "db_password")
    assert len(first) >= 40
    assert secret(cfg, "db_password") == first
    assert secret(cfg, "django_secret_key") != first
    path = cfg.cluster.state_dir / cfg.cluster.name / "secrets" / "db_password"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_mask():
    assert mask("password = 'abc123'\nuser=x", ["abc123", ""]) == "password = '********'\nuser=x"
