from django.contrib import admin
from django.urls import path

from pages import views

urlpatterns = [
    path("", views.hello, name="home"),
    path("hello/", views.hello, name="hello"),
    path("form/", views.form, name="form"),
    path("version/", views.version, name="version"),
    path("env/", views.env, name="env"),
    path("whoami/", views.whoami, name="whoami"),
    path("print/", views.print_view, name="print"),
    path("crash/", views.crash, name="crash"),
    path("admin/", admin.site.urls),
]
