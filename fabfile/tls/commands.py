"""Pure builders of the proxy's certificate commands (root shell scripts, every value quoted).

On the proxy:
  /etc/whipup/tls/site.crt, site.key   what nginx serves (templates/etc/nginx/...): symlinks to the
                                       certificate of the mode in force (certbot's live files for acme)
  /etc/whipup/tls/placeholder.*        a throw-away self-signed pair nginx starts with before the first
                                       certificate (configure checks nginx's config with `nginx -t`, which
                                       needs the files), made on the proxy, replaced by the real one
  /var/www/whipup-acme                 HTTP-01's webroot: nginx serves /.well-known/acme-challenge/ from it
  /etc/letsencrypt/renewal-hooks/deploy/whipup-nginx-reload   a renewed certificate -> nginx -s reload
Renewal is the certbot package's own schedule (its systemd timer; its cron job on a host without systemd,
where the tls stage makes cron one of the proxy's services).
"""
from __future__ import annotations

import shlex

from .config import SiteConfig

TLS_DIR = "/etc/whipup/tls"
SITE_CERT, SITE_KEY = f"{TLS_DIR}/site.crt", f"{TLS_DIR}/site.key"
WEBROOT = "/var/www/whipup-acme"
DEPLOY_HOOK = "/etc/letsencrypt/renewal-hooks/deploy/whipup-nginx-reload"
LOCAL_CA = "/usr/local/share/ca-certificates/whipup-local-cloud-acme.crt"
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
RENEW_BEFORE = 30 * 86400          # seconds: a certificate closer than this to its end is made again
SELF_SIGNED_DAYS = 365
q = shlex.quote


def live(site: SiteConfig, name: str) -> str:
    """certbot's current file `name` (fullchain.pem, privkey.pem) of the site's lineage."""
    return f"/etc/letsencrypt/live/{site.domain}/{name}"


def _subject_alt(names) -> str:
    return "subjectAltName=" + ",".join(f"DNS:{n}" for n in names)


def _openssl_pair(site: SiteConfig, stem: str, days: int) -> str:
    """A self-signed pair for the site's names at TLS_DIR/<stem>.crt/.key (the key made here, 0600)."""
    crt, key = f"{TLS_DIR}/{stem}.crt", f"{TLS_DIR}/{stem}.key"
    return (f"(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 "
            f"-days {int(days)} -subj {q('/CN=' + site.domain)} -addext {q(_subject_alt(site.names))} "
            f"-keyout {q(key)}.new -out {q(crt)}.new 2>&1) && chmod 644 {q(crt)}.new "
            f"&& mv {q(key)}.new {q(key)} && mv {q(crt)}.new {q(crt)}")


def _link(target: str, link: str) -> str:
    """Point `link` at `target` unless it does; prints `linked` when it changed."""
    return (f"if [ \"$(readlink {q(link)})\" != {q(target)} ]; then ln -sfn {q(target)} {q(link)}.new "
            f"&& mv -T {q(link)}.new {q(link)} && echo linked; fi")


def _reload_if(marker: str) -> str:
    """A graceful nginx reload when the script printed `marker` (nginx running: a reload; else nothing)."""
    return (f"if grep -q {q(marker)} \"$whipup_log\" && [ -s /run/nginx.pid ]; then nginx -t -q && nginx -s reload "
            f"&& echo reloaded; fi")


def _script(lines: list[str]) -> str:
    return "\n".join(["set -e", 'whipup_log=$(mktemp)', 'trap \'rm -f "$whipup_log"\' EXIT', *lines]) + "\n"


def placeholder(site: SiteConfig) -> str:
    """Before configure's nginx check: the site's files exist (a placeholder pair when there are none yet)."""
    return _script([
        f"install -d -m 0755 {q(TLS_DIR)} {q(WEBROOT)}",
        f"if [ ! -e {q(SITE_CERT)} ] || [ ! -e {q(SITE_KEY)} ]; then",
        f"  {_openssl_pair(site, 'placeholder', 2)}",
        f"  {_link(TLS_DIR + '/placeholder.crt', SITE_CERT)}",
        f"  {_link(TLS_DIR + '/placeholder.key', SITE_KEY)}",
        "  echo placeholder",
        "fi",
    ])


def self_signed(site: SiteConfig) -> str:
    """tls: self-signed: a pair for the site's names, made again when the names change or its end nears."""
    names = " ".join(site.names)
    stamp = f"{TLS_DIR}/self-signed.names"
    crt = f"{TLS_DIR}/self-signed.crt"
    return _script([
        f"install -d -m 0755 {q(TLS_DIR)}",
        f"if [ \"$(cat {q(stamp)} 2>/dev/null)\" != {q(names)} ] || "
        f"! openssl x509 -checkend {RENEW_BEFORE} -noout -in {q(crt)} >/dev/null 2>&1; then",
        f"  {_openssl_pair(site, 'self-signed', SELF_SIGNED_DAYS)}",
        f"  printf '%s\\n' {q(names)} > {q(stamp)}",
        "  echo issued | tee -a \"$whipup_log\"",
        "fi",
        f"{{ {_link(crt, SITE_CERT)}; {_link(TLS_DIR + '/self-signed.key', SITE_KEY)}; }} | tee -a \"$whipup_log\"",
        _reload_if("issued\\|linked"),
    ])


def user_file(dest: str, mode: str) -> str:
    """Write stdin (a file of the user's) to `dest` with `mode`; prints `changed` when it differs."""
    return _script([
        f"install -d -m 0755 {q(TLS_DIR)}",
        f"(umask 077 && cat > {q(dest)}.new)",
        f"chmod {q(mode)} {q(dest)}.new",
        f"if cmp -s {q(dest)}.new {q(dest)}; then rm -f {q(dest)}.new; else mv {q(dest)}.new {q(dest)}; "
        "echo changed; fi",
    ])


def user_files_linked(changed: bool) -> str:
    """The site's files linked to the user's; nginx reloaded when a link or (`changed`) a file changed."""
    crt, key = f"{TLS_DIR}/user.crt", f"{TLS_DIR}/user.key"
    return _script([
        f"{{ {_link(crt, SITE_CERT)}; {_link(key, SITE_KEY)}; }} | tee -a \"$whipup_log\"",
        *(["echo changed >> \"$whipup_log\""] if changed else []),
        _reload_if("linked\\|changed"),
    ])


def local_ca() -> str:
    """The local cloud's ACME listener CA (stdin) in the host's trust store, as a cloud host trusts its
    surroundings' CAs: certbot reaches pebble over HTTPS. Only ever on the local cloud."""
    return _script([
        f"install -d -m 0755 {q(LOCAL_CA.rsplit('/', 1)[0])}",
        f"cat > {q(LOCAL_CA)}.new",
        f"if cmp -s {q(LOCAL_CA)}.new {q(LOCAL_CA)}; then rm -f {q(LOCAL_CA)}.new; else "
        f"mv {q(LOCAL_CA)}.new {q(LOCAL_CA)} && update-ca-certificates >/dev/null 2>&1 && echo trusted; fi",
    ])


def hook_text() -> str:
    return ("#!/bin/sh\n# whipup: a renewed certificate reaches nginx by a graceful reload\n"
            "nginx -t -q && nginx -s reload 2>&1\n")


def certbot_argv(site: SiteConfig, directory: str) -> list[str]:
    argv = ["certbot", "certonly", "--non-interactive", "--agree-tos", "--webroot", "-w", WEBROOT,
            "--cert-name", site.domain]
    for name in site.names:
        argv += ["-d", name]
    argv += ["--server", directory]
    argv += ["-m", site.email] if site.email else ["--register-unsafely-without-email"]
    return argv


def acme(site: SiteConfig, directory: str) -> str:
    """tls: acme: certbot's certificate for the site's names by HTTP-01 (webroot), asked for only when there
    is none for exactly these names or it nears its end; the deploy hook; the site's files linked to it."""
    want = " ".join(sorted(site.names))
    cert = live(site, "fullchain.pem")
    return _script([
        f"install -d -m 0755 {q(WEBROOT)} {q(DEPLOY_HOOK.rsplit('/', 1)[0])}",
        f"printf '%s' {q(hook_text())} > {q(DEPLOY_HOOK)}.new && chmod 755 {q(DEPLOY_HOOK)}.new "
        f"&& mv {q(DEPLOY_HOOK)}.new {q(DEPLOY_HOOK)}",
        f"have=$(certbot certificates --cert-name {q(site.domain)} 2>/dev/null | sed -n 's/^ *Domains: //p' "
        "| tr ' ' '\\n' | sed '/^$/d' | sort | tr '\\n' ' ' | sed 's/ $//')",
        f"if [ \"$have\" != {q(want)} ] || ! openssl x509 -checkend {RENEW_BEFORE} -noout -in {q(cert)} "
        ">/dev/null 2>&1; then",
        f"  {shlex.join(certbot_argv(site, directory))} 2>&1 | tail -n 20",
        f"  openssl x509 -checkend {RENEW_BEFORE} -noout -in {q(cert)} >/dev/null",
        "  echo issued | tee -a \"$whipup_log\"",
        "fi",
        f"{{ {_link(cert, SITE_CERT)}; {_link(live(site, 'privkey.pem'), SITE_KEY)}; }} | tee -a \"$whipup_log\"",
        _reload_if("issued\\|linked"),
    ])


def show() -> str:
    """What the proxy serves: subject, issuer, end date, serial (status; as root: certbot's files are 0700)."""
    return (f"openssl x509 -in {q(SITE_CERT)} -noout -subject -issuer -enddate -serial -nameopt RFC2253 "
            f"2>/dev/null || echo none")


def parse_show(text: str) -> dict[str, str]:
    """`show`'s output: {subject, issuer, notAfter, serial} (empty: no certificate)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("subject", "issuer", "notAfter", "serial"):
            out[key.strip()] = value.strip()
    return out


def directory(site: SiteConfig, target: str, sandbox_directory: str | None) -> str:
    """The ACME directory: the local cloud's pebble, else Let's Encrypt (or its staging directory)."""
    if target == "sandbox":
        if not sandbox_directory:
            raise ValueError("the local cloud's ACME directory is unknown")
        return sandbox_directory
    return LETS_ENCRYPT_STAGING if site.staging else LETS_ENCRYPT


def template_context(site: SiteConfig) -> dict:
    """What the nginx site template sees as `site`."""
    return {"domain": site.domain, "names": list(site.names), "server_names": " ".join(site.names) or "_",
            "tls": site.tls, "mode": site.mode, "certificate": SITE_CERT, "key": SITE_KEY, "hsts": site.hsts,
            "acme_webroot": WEBROOT}
