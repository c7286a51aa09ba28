# Shown by the /version/ view. The reload tests rewrite this file and touch
# mysite.fcgi; the next request must show the new text.
VERSION = "version one"
