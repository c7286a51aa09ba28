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
#   mysite.fcgi and site.toml. The web server's user must be able to write to
#   $SOCKET (check with `ls -l`; `./mysite.fcgi help` lists the options of
#   runfcgi).
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

cd $PROJDIR
if [ -f $PIDFILE ]; then
    PID=`cat -- $PIDFILE`
    kill $PID
    rm -f -- $PIDFILE
    # The old copy finishes the request in flight (about 3 s at most), then
    # exits; wait for it so that the new one can take over the socket.
    for i in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 $PID 2>/dev/null || break
        sleep 1
    done
fi

exec /usr/bin/env - \
  PYTHONPATH="../python:.." \
  ./mysite.fcgi runfcgi socket=$SOCKET pidfile=$PIDFILE
