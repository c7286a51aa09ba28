"""The Apache server-config templates shim-templates/apache-mod-fastcgi.conf
and apache-fcgid-vhost.conf: `apache2 -t` accepts each as shipped (with
the modules it names loaded; mod_fastcgi is not packaged in Debian 12, so
its one directive is guarded and -t checks the rest), also as Apache 2.2
would read them (mod_authz_core not loaded, so that every 2.4-only
`Require` must be guarded; mod_access_compat for Order/Deny); and each
vhost, served for real under Debian's `<Directory /> Require all denied`,
grants its folders, serves static files and refuses private ones. The
fcgid vhost runs the app through mod_fcgid."""

import subprocess

import pytest

from e2e_harness import APACHE_MODULES, MODULES, TEMPLATES, Apache, free_port, from_template, \
    start_site
from site_checks import private_refused_public_served, private_site, probe

TOKEN = "Bearer 0123456789abcdef"
MEDIA = "/home/user/python/django/contrib/admin/media"

# What each template needs loaded: (name, file) as in LoadModule.
BASE_MODULES = [m for m in APACHE_MODULES if m[0] != "fcgid_module"]
FCGID = ("fcgid_module", "mod_fcgid.so")
ACCESS_COMPAT = ("access_compat_module", "mod_access_compat.so")
NEEDS = {
    "apache-mod-fastcgi.conf": BASE_MODULES,
    "apache-fcgid-vhost.conf": [*BASE_MODULES, FCGID],
}
# Apache 2.4 without mod_authz_core parses like 2.2: `<IfModule
# mod_authz_core.c>` is false and a bare `Require` is an "Invalid command".
LIKE_22 = [ACCESS_COMPAT] + [m for m in BASE_MODULES if not m[0].startswith("authz_")]
DENY_ALL_24 = "Require all denied"
DENY_ALL_22 = "Order deny,allow\n    Deny from all"


def syntax_check(directory, template_text, modules, *flags, deny_all=DENY_ALL_24):
    """`apache2 -t` of a minimal server config that loads `modules`, refuses
    every folder as Debian's apache2.conf does, and includes the template.
    Returns (exit code, output)."""
    directory.mkdir(parents=True, exist_ok=True)
    included = directory / "template.conf"
    included.write_text(template_text)
    loads = "\n".join(f"LoadModule {name} {MODULES / so}" for name, so in modules)
    conf = directory / "httpd.conf"
    conf.write_text(f"""\
ServerRoot "/etc/apache2"
ServerName 127.0.0.1
Listen 127.0.0.1:{free_port()}
PidFile {directory}/httpd.pid
DefaultRuntimeDir {directory}
ErrorLog {directory}/error.log
ScriptSock {directory}/cgid.sock
{loads}
<Directory />
    AllowOverride None
    {deny_all}
</Directory>
Include {included}
""")
    proc = subprocess.run(["apache2", "-f", str(conf), "-t", *flags],
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
                          capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def check_dir(run_dir, request):
    return run_dir / "syntax" / request.node.name.replace("[", "-").replace("]", "")


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_template_passes_apache2_t_as_shipped(check_dir, name):
    text = (TEMPLATES / name).read_text()
    code, out = syntax_check(check_dir, text, NEEDS[name])
    assert code == 0 and "Syntax OK" in out, out
    # The vhost was read, not skipped: -t lists it.
    code, out = syntax_check(check_dir, text, NEEDS[name], "-D", "DUMP_VHOSTS")
    assert code == 0 and "mysite.com" in out and "template.conf" in out, out


def test_mod_fastcgi_template_guards_only_mod_fastcgi_directives(check_dir):
    """mod_fastcgi.so is not on this machine: -t passing above means every
    FastCGIExternalServer line sits in <IfModule mod_fastcgi.c>. The guard
    must stay that narrow: with it removed, -t sees only that directive."""
    assert not (MODULES / "mod_fastcgi.so").exists(), "mod_fastcgi is here: test it for real"
    text = (TEMPLATES / "apache-mod-fastcgi.conf").read_text()
    assert text.count("<IfModule mod_fastcgi.c>") == 1, text
    unguarded = text.replace("<IfModule mod_fastcgi.c>", "<IfModule mod_alias.c>")
    code, out = syntax_check(check_dir, unguarded, BASE_MODULES)
    assert code != 0 and "Invalid command 'FastCGIExternalServer'" in out, out


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_template_passes_apache2_t_as_apache_22_reads_it(check_dir, name):
    """Unguarded 2.4-only syntax (the review found a bare `Require all
    denied`) fails here; the 2.2 branches (Order/Deny, Allow from all, the
    dot-folder rewrite) are parsed."""
    text = (TEMPLATES / name).read_text()
    modules = LIKE_22 + [m for m in NEEDS[name] if m == FCGID]
    code, out = syntax_check(check_dir, text, modules, deny_all=DENY_ALL_22)
    assert code == 0 and "Syntax OK" in out, out
    # The same check does fail on an unguarded Require.
    code, out = syntax_check(check_dir, text + "<Location /x>\n    Require all denied\n</Location>\n",
                             modules, deny_all=DENY_ALL_22)
    assert code != 0 and "Invalid command 'Require'" in out, out


# The templates that set CGIPassAuth and may run on an Apache before 2.4.13
# (apache-mod-fastcgi.conf has none; apache-proxy-fcgi.conf says it needs
# 2.4.13 and sets it unguarded, as its comment there explains).
@pytest.mark.parametrize("name", ["apache-fcgid-vhost.conf"])
def test_template_guards_cgipassauth_by_version(name):
    """CGIPassAuth exists from Apache 2.4.13 on; before, it is an error.
    No module's absence shows that to -t, so: every CGIPassAuth line lies
    in an <IfVersion >= 2.4.13> (inside <IfModule mod_version.c>)."""
    stack, found = [], 0
    for number, line in enumerate((TEMPLATES / name).read_text().splitlines(), 1):
        s = line.strip()
        if s.startswith("</"):
            stack.pop()
        elif s.startswith("<"):
            stack.append(s)
        elif s.startswith("CGIPassAuth"):
            found += 1
            assert "<IfVersion >= 2.4.13>" in stack and "<IfModule mod_version.c>" in stack, (
                f"{name} line {number}: CGIPassAuth in {stack}")
    assert not stack, f"{name}: unclosed {stack}"
    assert found, f"{name}: no CGIPassAuth line"


class TemplateApache(Apache):
    """A private Apache whose one virtual host is a shipped template, on a
    free port of 127.0.0.1, with nothing granting the web root but the
    template itself: the base config refuses every folder, as Debian's
    apache2.conf does (`<Directory /> Require all denied`)."""

    def __init__(self, directory, docroot, vhost, modules):
        super().__init__(directory, docroot, modules=modules)
        self.vhost = vhost

    def config_text(self):
        base = super().config_text()
        grant = (f"<Directory {self.docroot}>\n    AllowOverride All\n"
                 "    Options +ExecCGI +FollowSymLinks\n    Require all granted\n</Directory>\n")
        assert grant in base, "the harness's grant for the web root changed"
        assert "<Directory />\n    AllowOverride None\n    Require all denied" in base
        vhost = self.vhost
        for head in ("<VirtualHost *:80>", "<VirtualHost 64.92.160.91>"):
            vhost = vhost.replace(head, f"<VirtualHost 127.0.0.1:{self.port}>")
        return base.replace(grant, "") + vhost


def template_site(make_site, name, modules, extra=()):
    """private_site's web root and probe app behind the template `name`,
    /media aliased to a folder outside the web root."""
    site = private_site(make_site, "# ignored: AllowOverride None\n")
    media = site.root / "media"
    media.mkdir()
    (media / "admin.css").write_text("/* admin */\n")
    media.chmod(0o755)
    (media / "admin.css").chmod(0o644)
    vhost = from_template(name, [
        ("DocumentRoot /home/user/public_html", f"DocumentRoot {site.www}"),
        ("<Directory /home/user/public_html>", f"<Directory {site.www}>"),
        (f"Alias /media {MEDIA}", f"Alias /media {media}"),
        (f"<Directory {MEDIA}>", f"<Directory {media}>"),
        *extra,
    ])
    site.apache = TemplateApache(site.root / "apache", site.www, vhost, modules)
    return site


def check_files(site):
    private_refused_public_served(site)
    r = site.get("/media/admin.css")
    assert (r.status_code, r.text) == (200, "/* admin */\n")


def test_fcgid_vhost_runs_the_app_and_refuses_private_files(make_site):
    site = start_site(template_site(make_site, "apache-fcgid-vhost.conf", NEEDS[
        "apache-fcgid-vhost.conf"]))
    check_files(site)
    assert probe(site, "/") == {"SCRIPT_NAME": "", "PATH_INFO": "/"}
    assert probe(site, "/a/b") == {"SCRIPT_NAME": "", "PATH_INFO": "/a/b"}
    # A URL that names no file reaches the app, private-looking or not.
    assert probe(site, "/foo.py") == {"SCRIPT_NAME": "", "PATH_INFO": "/foo.py"}
    assert probe(site, "/a", headers={"Authorization": TOKEN}) == {
        "SCRIPT_NAME": "", "PATH_INFO": "/a", "HTTP_AUTHORIZATION": TOKEN}


def test_fcgid_vhost_passes_authorization_without_cgipassauth(make_site):
    """Apache before 2.4.13 has no CGIPassAuth: the template's rewrite
    fallback must deliver the header then (simulated by a version guard
    no Apache meets)."""
    site = start_site(template_site(make_site, "apache-fcgid-vhost.conf", NEEDS[
        "apache-fcgid-vhost.conf"], extra=[("<IfVersion >= 2.4.13>", "<IfVersion >= 99>")]))
    assert probe(site, "/a", headers={"Authorization": TOKEN}) == {
        "SCRIPT_NAME": "", "PATH_INFO": "/a", "HTTP_AUTHORIZATION": TOKEN}
    assert probe(site, "/a") == {"SCRIPT_NAME": "", "PATH_INFO": "/a"}


def test_mod_fastcgi_vhost_grants_its_folders_and_refuses_private_files(make_site):
    """Without mod_fastcgi the app cannot run here, but everything else the
    vhost does is Apache's own: before the fix, every file was a 403 under
    Debian's `<Directory /> Require all denied`."""
    site = template_site(make_site, "apache-mod-fastcgi.conf", NEEDS["apache-mod-fastcgi.conf"])
    # FastCGIExternalServer names a file that need not exist; here none does.
    site.binary.unlink()
    start_site(site)
    check_files(site)
    # With mod_fastcgi missing nothing answers for the app (as the template
    # warns): 404, not a download and not a server error.
    assert site.get("/").status_code == 404
    assert site.get("/foo.py").status_code == 404
