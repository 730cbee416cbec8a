//! Attribute macros for [cacheops](https://docs.rs/cacheops): `#[cached_as(...)]` and
//! `#[cached(...)]` on `async fn`s returning `Result<T, E>` (`T: Serialize + DeserializeOwned`,
//! `E: From<cacheops::Error>`).
//!
//! ```text
//! #[cacheops::cached_as(cache = EXPR, deps = [DEP, ...], timeout = DURATION, extra = EXPR,
//!                       lock = BOOL, lock_wait = DURATION, serve_stale = DURATION, name = "id")]
//! #[cacheops::cached_as(auto, cache = EXPR, ...)]
//! #[cacheops::cached(cache = EXPR, timeout = DURATION, extra = EXPR, name = "id")]
//! ```
//!
//! * `cache`: a `Cache` (or `&Cache`, `Arc<Cache>`; for `cached` also a `FileCache`); default:
//!   `cacheops::global_cache()?`.
//! * `deps`: expressions convertible into `cacheops::Dep` (a table name, `Dep::row`, `Dep::sql`,
//!   `Dependencies`). Inside `deps` and `extra` the function's arguments are in scope **as
//!   references**.
//! * Arguments marked `#[skip]` (a connection, say) are left out of the key and of the companions.
//! * Next to the function, a module of the same name holds the companions:
//!   `NAME`, `invalidate(args…)`, `key(args…) -> Result<FnKey, Error>` (with `get`/`set`/`delete`).

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, FnArg, Ident, ItemFn, LitStr, Pat, Token, Type};

#[derive(Default)]
struct Options {
    auto: bool,
    cache: Option<Expr>,
    deps: Option<Vec<Expr>>,
    timeout: Option<Expr>,
    extra: Option<Expr>,
    lock: Option<Expr>,
    lock_wait: Option<Expr>,
    serve_stale: Option<Expr>,
    name: Option<LitStr>,
    serializer: Option<Type>,
}

enum Opt {
    Flag(Ident),
    Value(Ident, Tokens),
}

impl Parse for Opt {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let id: Ident = input.parse()?;
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            // Everything up to the next top-level comma.
            let mut toks = Tokens::new();
            while !input.is_empty() && !input.peek(Token![,]) {
                let tt: proc_macro2::TokenTree = input.parse()?;
                toks.extend(std::iter::once(tt));
            }
            Ok(Opt::Value(id, toks))
        } else {
            Ok(Opt::Flag(id))
        }
    }
}

fn parse_options(attr: TokenStream, simple: bool) -> syn::Result<Options> {
    let opts = Punctuated::<Opt, Token![,]>::parse_terminated.parse(attr)?;
    let mut o = Options::default();
    for opt in opts {
        match opt {
            Opt::Flag(id) if id == "auto" && !simple => o.auto = true,
            Opt::Flag(id) => return Err(syn::Error::new(id.span(), format!("unknown flag `{id}`"))),
            Opt::Value(id, toks) => {
                let key = id.to_string();
                let expr = || syn::parse2::<Expr>(toks.clone());
                match key.as_str() {
                    "cache" => o.cache = Some(expr()?),
                    "timeout" => o.timeout = Some(expr()?),
                    "extra" => o.extra = Some(expr()?),
                    "name" => o.name = Some(syn::parse2(toks)?),
                    "deps" if !simple => {
                        let arr: syn::ExprArray = syn::parse2(toks)?;
                        o.deps = Some(arr.elems.into_iter().collect());
                    }
                    "lock" if !simple => o.lock = Some(expr()?),
                    "lock_wait" if !simple => o.lock_wait = Some(expr()?),
                    "serve_stale" if !simple => o.serve_stale = Some(expr()?),
                    "serializer" => o.serializer = Some(syn::parse2(toks)?),
                    _ => return Err(syn::Error::new(id.span(), format!("unknown option `{key}`"))),
                }
            }
        }
    }
    if !simple {
        match (&o.deps, o.auto) {
            (Some(_), true) => {
                return Err(syn::Error::new(
                    proc_macro2::Span::call_site(),
                    "give either `deps = [...]` or `auto`, not both",
                ));
            }
            (None, false) => {
                return Err(syn::Error::new(
                    proc_macro2::Span::call_site(),
                    "cached_as needs `deps = [...]` (tables, Dep::row, Dep::sql, Dependencies) or `auto`",
                ));
            }
            _ => {}
        }
    }
    Ok(o)
}

struct Arg {
    ident: Ident,
    ty: Type,
    skip: bool,
}

fn expand(attr: TokenStream, item: TokenStream, simple: bool) -> syn::Result<Tokens> {
    let opts = parse_options(attr, simple)?;
    let mut func: ItemFn = syn::parse(item)?;
    if func.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(func.sig.fn_token, "cacheops caching macros apply to `async fn`s"));
    }
    if !func.sig.generics.params.is_empty() || func.sig.generics.where_clause.is_some() {
        // Lifetimes are fine in the arguments (elided); named generics would leak into the companions.
        let only_lifetimes = func.sig.generics.params.iter().all(|p| matches!(p, syn::GenericParam::Lifetime(_)));
        if !only_lifetimes || func.sig.generics.where_clause.is_some() {
            return Err(syn::Error::new_spanned(&func.sig.generics, "cached functions may not be generic"));
        }
    }
    let mut args = Vec::new();
    for input in &mut func.sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new_spanned(r, "cached functions may not take `self`: use a free function"));
            }
            FnArg::Typed(pt) => {
                let mut skip = false;
                pt.attrs.retain(|a| {
                    if a.path().is_ident("skip") {
                        skip = true;
                        false
                    } else {
                        true
                    }
                });
                let ident = match &*pt.pat {
                    Pat::Ident(pi) if pi.subpat.is_none() => pi.ident.clone(),
                    other => {
                        return Err(syn::Error::new_spanned(other, "cached function arguments must be plain names"));
                    }
                };
                args.push(Arg { ident, ty: (*pt.ty).clone(), skip });
            }
        }
    }

    let vis = &func.vis;
    let name = &func.sig.ident;
    let ret = &func.sig.output;
    let attrs = &func.attrs;
    let body = &func.block;
    let inner_inputs = &func.sig.inputs;
    let all_idents: Vec<&Ident> = args.iter().map(|a| &a.ident).collect();
    let keyed: Vec<&Arg> = args.iter().filter(|a| !a.skip).collect();
    let keyed_idents: Vec<&Ident> = keyed.iter().map(|a| &a.ident).collect();
    let keyed_params: Vec<Tokens> = keyed
        .iter()
        .map(|a| {
            let (i, t) = (&a.ident, &a.ty);
            quote!(#i: #t)
        })
        .collect();
    let fn_name_str = match &opts.name {
        Some(n) => quote!(#n),
        None => quote!(#name::NAME),
    };
    let name_const = match &opts.name {
        Some(n) => quote!(#n),
        None => quote!(::core::module_path!()),
    };

    let cache_holder = match &opts.cache {
        Some(c) => quote!(let __cacheops_holder = #c;),
        None => quote!(let __cacheops_holder = ::cacheops::global_cache()?;),
    };
    let mut modifiers = Tokens::new();
    if let Some(t) = &opts.timeout {
        modifiers.extend(quote!(.timeout(#t)));
    }
    if let Some(e) = &opts.extra {
        modifiers.extend(quote!(.extra(&(#e))));
    }
    if let Some(l) = &opts.lock {
        modifiers.extend(quote!(.lock(#l)));
    }
    if let Some(w) = &opts.lock_wait {
        modifiers.extend(quote!(.lock_wait(#w)));
    }
    if let Some(s) = &opts.serve_stale {
        modifiers.extend(quote!(.serve_stale(#s)));
    }
    if let Some(s) = &opts.serializer {
        modifiers.extend(quote!(.serializer::<#s>()));
    }
    let constructor = if simple {
        quote!(__cacheops_holder.cached(#fn_name_str))
    } else if opts.auto {
        quote!(__cacheops_holder.cached_as_auto(#fn_name_str))
    } else {
        let deps = opts.deps.as_deref().unwrap_or_default();
        quote!(__cacheops_holder.cached_as(
            #fn_name_str,
            <::cacheops::Deps as ::core::iter::FromIterator<::cacheops::Dep>>::from_iter([#(::cacheops::Dep::from(#deps)),*])
        ))
    };
    // Builds the cached function with the arguments in scope as references.
    let build = |idents: &[&Ident]| {
        quote!({
            #(#[allow(unused_variables)] let #idents = &#idents;)*
            #cache_holder
            #constructor #modifiers
        })
    };
    let build_outer = build(&all_idents);
    let build_companion = build(&keyed_idents);
    let inner = format_ident!("__cacheops_inner_{}", name);
    let ser = match &opts.serializer {
        Some(s) => quote!(#s),
        None => quote!(::cacheops::DefaultSerializer),
    };
    let key_type = if simple { quote!(::cacheops::SimpleKey<#ser>) } else { quote!(::cacheops::FnKey<#ser>) };
    let doc_mod = format!("Cache companions of [`fn@{name}`]: `invalidate(args…)`, `key(args…)`, `NAME`.");
    let sig = &func.sig;
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #[allow(clippy::too_many_arguments)]
            async fn #inner(#inner_inputs) #ret #body
            let __cacheops_fn = #build_outer;
            let __cacheops_args = ::cacheops::__private::args_key(&(#(&#keyed_idents,)*));
            __cacheops_fn
                .__get_or_compute_args(__cacheops_args, move || #inner(#(#all_idents),*))
                .await
        }

        #[doc = #doc_mod]
        #[allow(non_snake_case, clippy::too_many_arguments, unused_imports, dead_code)]
        #vis mod #name {
            use super::*;

            /// The function's identity in cache keys.
            pub const NAME: &str = #name_const;

            /// Drops the cached result for these arguments; returns whether there was one.
            pub async fn invalidate(#(#keyed_params),*) -> ::core::result::Result<bool, ::cacheops::Error> {
                let __cacheops_fn = #build_companion;
                __cacheops_fn.invalidate(&(#(&#keyed_idents,)*)).await
            }

            /// The cache entry for these arguments (`get::<T>()`, `set(&v)`, `delete()`).
            pub fn key(#(#keyed_params),*) -> ::core::result::Result<#key_type, ::cacheops::Error> {
                let __cacheops_fn = #build_companion;
                ::core::result::Result::Ok(__cacheops_fn.key(&(#(&#keyed_idents,)*)))
            }
        }
    })
}

/// Caches an `async fn`'s result, invalidated by writes to its dependencies. See the crate docs.
#[proc_macro_attribute]
pub fn cached_as(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr, item, false) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Caches an `async fn`'s result for a time (no invalidation by writes). See the crate docs.
#[proc_macro_attribute]
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr, item, true) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}
