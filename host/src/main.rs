fn main() {
    let wasm: &[u8] = include_bytes!(env!("TRAEFIK_OPENSTACK_DEFAULT_MODULE"));
    println!("{}", wasm.len());
}
