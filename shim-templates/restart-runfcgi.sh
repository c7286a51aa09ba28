#!/bin/bash
# fcgi-shim: (re)start mysite.fcgi as a FastCGI server you run yourself
#
# What it is for: the old Django how-to's restart script, for setups where
#   the web server connects to an app you start (apache-proxy-fcgi.conf,
#   apache-mod-fastcgi.conf, lighttpd-socket.conf, nginx-spawn-fcgi.conf).
#   It stops the running copy (if its pid file exists), then starts a new one
#   listening on $SOCKET, with an empty environment apart from PYTHONPATH.
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
if [ -s $PIDFILE ]; then
    PID=`cat -- $PIDFILE`
    kill $PID
    rm -f -- $PIDFILE
    # No wait: the old copy removes the socket file at once and finishes
    # its requests in flight (3 s at most) on the socket it holds, while the
    # new one below binds a new file at once; requests wait in its queue
    # while it imports the app. (-s: a pidfile that root made in /run is
    # emptied, not removed, at a stop.)
fi

exec /usr/bin/env - \
  PYTHONPATH="../python:.." \
  ./mysite.fcgi runfcgi socket=$SOCKET pidfile=$PIDFILE umask=$UMASK
