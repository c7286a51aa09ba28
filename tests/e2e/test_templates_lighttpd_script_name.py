"""When `script_name = ""` is needed with lighttpd, as shim-templates/site.toml,
lighttpd-bin-path.conf and `mysite.fcgi init` say: only when
fastcgi.server mounts the app at "/" (the alternative lighttpd-bin-path.conf
describes) and "fix-root-scriptname" is not enabled. With the template as
shipped ("/mysite.fcgi" plus url.rewrite-if-not-file) the app already sees
SCRIPT_NAME "" and PATH_INFO the whole path.

If lighttpd (or fcgi-shim) stops needing the setting, the first test fails:
then the three texts must change too."""

from e2e_harness import FrontedSite, lighttpd_bin_path, start_site
from site_checks import PROBE, probe

ENTRY = '"/mysite.fcgi" => (('
REWRITE = 'url.rewrite-if-not-file = ( "^(/.*)$" => "/mysite.fcgi$1" )\n'


def lighttpd_site(make_site, root_mount, fix_root=False):
    site = make_site("wsgi", cls=FrontedSite)
    (site.app / "probe.py").write_text(PROBE)
    site.write_config(wsgi_app="probe:application")
    front = lighttpd_bin_path(site, max_procs=1)
    if root_mount:
        # The template's "Alternative": the app mounted at "/", no rewrite.
        assert ENTRY in front.site_conf and REWRITE in front.site_conf
        front.site_conf = front.site_conf.replace(ENTRY, '"/" => ((').replace(REWRITE, "")
    if fix_root:
        front.site_conf = front.site_conf.replace(
            '"check-local" => "disable",',
            '"check-local" => "disable",\n        "fix-root-scriptname" => "enable",', 1)
        assert "fix-root-scriptname" in front.site_conf
    site.front = front
    return start_site(site)


def test_root_mount_needs_script_name_and_script_name_fixes_it(make_site):
    site = lighttpd_site(make_site, root_mount=True)
    # lighttpd's quirk, as site.toml describes it.
    assert probe(site, "/a/b") == {"SCRIPT_NAME": "/a", "PATH_INFO": "/b"}
    site.write_config(script_name="")
    for path in ("/a/b", "/", "/a"):
        assert probe(site, path) == {"SCRIPT_NAME": "", "PATH_INFO": path}, path


def test_root_mount_with_fix_root_scriptname_needs_nothing(make_site):
    site = lighttpd_site(make_site, root_mount=True, fix_root=True)
    for path in ("/a/b", "/"):
        assert probe(site, path) == {"SCRIPT_NAME": "", "PATH_INFO": path}, path


def test_shipped_bin_path_template_needs_nothing(make_site):
    site = lighttpd_site(make_site, root_mount=False)
    assert "script_name" not in site.toml.read_text()
    for path in ("/a/b", "/", "/a"):
        assert probe(site, path) == {"SCRIPT_NAME": "", "PATH_INFO": path}, path
