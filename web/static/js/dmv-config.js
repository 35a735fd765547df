// Where dicom-microscopy-viewer finds its decoder worker and WebAssembly codecs: the package's
// dynamic-import folder, served from node_modules. Must run before the viewer bundle loads.
window.PUBLIC_LIB_URL = "/static/vendor/dicom-microscopy-viewer/dynamic-import/";
