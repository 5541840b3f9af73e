"""The demo application: enrol a gallery, identify every face of a photo, a web page.

`gallery` builds and stores galleries, `identify` detects, crops (exactly as the crop
stage does), embeds and ranks faces, `server` is the Flask page; `faceid.cli` is the
command line (`faceid enroll | identify | serve`).
"""
