#!/bin/bash
# fcgi-shim: (re)start mysite.fcgi as a FastCGI server you run yourself
#
# What it is for: the old Django how-to's restart script, for setups where
#   the web server connects to an app you start (apache-proxy-fcgi.conf,
#   apache-mod-fastcgi.conf, lighttpd-socket.conf, nginx-spawn-fcgi.conf).
#   It starts a new copy listening on $SOCKET, with an empty environment
#   apart from PYTHONPATH, which replaces the running one (if any) without
#   a moment with no socket.
# Where it goes: anywhere you like, e.g. ~/bin/restart-mysite.sh; chmod 755.
#   Run it after deploying new code (or just `touch mysite.fcgi`: the running
#   shim reloads the app by itself), from cron @reboot, or from a systemd unit.
# What to replace: the three settings below. PROJDIR is the folder holding
#   mysite.fcgi and site.toml. `./mysite.fcgi runfcgi help` lists the options
#   of runfcgi.
#
# The web server's user (www-data) must be able to write to $SOCKET: connect(2)
# on a unix socket needs it. With runfcgi's default umask 022 the socket is
# rwxr-xr-x, every page is 503 and Apache's error log says
#   (13)Permission denied: AH02454: FCGI: attempt to connect to Unix domain
#   socket /home/user/myproject/mysite.sock (localhost:8000) failed
# (lighttpd: "establishing connection failed: socket: unix:...: Permission
# denied"). UMASK=000 below makes it rwxrwxrwx, which lets ANY local user
# connect and talk to your app: put the socket in a directory only you and
# the web server can enter, e.g. as root
#   mkdir -m 0750 /home/user/run && chown user:www-data /home/user/run
# with SOCKET="/home/user/run/mysite.sock" (and the same path in the web
# server's config). UMASK=007 (rwxrwx---) is enough when the socket's group
# is www-data (`chmod g+s` on that directory). The umask also applies to
# files the app creates. Check with `ls -l $SOCKET`.
#
# The environment below is emptied (env -) so that nothing from your login
# shell leaks into the site: there is no PATH, so fcgi-shim uses
# /usr/bin/python3 unless site.toml says `python = "..."` (your virtualenv's).
# PYTHONPATH (relative to PROJDIR) is kept from the old script; site.toml's
# search_path and [env] are the better place for such settings.

# Replace these three settings.
PROJDIR="/home/user/myproject"
PIDFILE="$PROJDIR/mysite.pid"
SOCKET="$PROJDIR/mysite.sock"
# The socket's mode: see above before you change it.
UMASK=000

cd $PROJDIR
# No kill first: started with the socket and pid file of the copy that runs,
# the new copy binds a socket beside it and imports the app, and only then
# moves its socket over the old one's path and tells the old copy to stop
# (which finishes its requests in flight, 3 s at most, on the socket it
# holds). So no request finds no socket, and a new copy that cannot start
# (the app does not import) says why and leaves the old one serving. After
# changing SOCKET, stop the old copy first yourself: kill `cat $PIDFILE`.
exec /usr/bin/env - \
  PYTHONPATH="../python:.." \
  ./mysite.fcgi runfcgi socket=$SOCKET pidfile=$PIDFILE umask=$UMASK
