# Lets WAMR's cmake use Debian's libsimde-dev instead of cloning simde from GitHub.
set(FETCHCONTENT_SOURCE_DIR_SIMDE "/usr/include" CACHE PATH "system simde" FORCE)
