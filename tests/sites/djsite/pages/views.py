"""Views of the test site: each one exercises one thing the tests check."""

import os
import signal
import sys

from django import forms
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import reverse

from . import version as version_module


class MessageForm(forms.Form):
    name = forms.CharField(max_length=100)
    message = forms.CharField(max_length=1000, widget=forms.Textarea)


def hello(request):
    # The tests compare these with what a correctly mounted site must give:
    # the paths the visitor typed, never ".../mysite.fcgi/...".
    return render(
        request,
        "pages/hello.html",
        {
            "form_url": reverse("form"),
            "script_name": request.META.get("SCRIPT_NAME", ""),
            "path_info": request.path_info,
            "version": version_module.VERSION,
        },
    )


def form(request):
    if request.method == "POST":
        f = MessageForm(request.POST)
        if f.is_valid():
            return render(request, "pages/form_result.html", {"data": f.cleaned_data})
    else:
        f = MessageForm()
    return render(request, "pages/form.html", {"form": f})


def version(request):
    return HttpResponse(version_module.VERSION + "\n", content_type="text/plain")


def env(request):
    greeting = os.environ.get("DJSITE_GREETING", "(unset)")
    return HttpResponse(f"greeting={greeting}\n", content_type="text/plain")


def whoami(request):
    import pwd

    lines = [
        f"pid={os.getpid()}",
        f"user={pwd.getpwuid(os.getuid()).pw_name}",
        f"prefix={sys.prefix}",
        f"cwd={os.getcwd()}",
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain")


def print_view(request):
    # A stray print() must land in the log, never in the response body (under
    # flup and CGI, stdout *is* the response).
    token = request.GET.get("token", "")
    print(f"djsite print marker stdout {token}")
    print(f"djsite print marker stderr {token}", file=sys.stderr)
    return HttpResponse("printed\n", content_type="text/plain")


def crash(request):
    # Kill the Python worker in the middle of a request, as a segfaulting C
    # extension or the OOM killer would.
    how = request.GET.get("how", "exit")
    if how == "exit":
        os._exit(7)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return HttpResponseBadRequest("how must be exit or kill\n")
