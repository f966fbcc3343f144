//! Links libtorch_cuda even though no symbol of it is referenced directly: without it, libtorch
//! registers no CUDA backend and `--device cuda` would report no devices. Only when the libtorch
//! in use ships CUDA (the pip `torch` wheel does); the bootstrap exports its directory as
//! `CUMA_TORCH_LIB`.

fn main() {
    println!("cargo:rerun-if-env-changed=CUMA_TORCH_LIB");
    let Some(lib) = std::env::var_os("CUMA_TORCH_LIB") else {
        return;
    };
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
