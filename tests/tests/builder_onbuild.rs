//! ONBUILD: triggers recorded in an image's config run when another build uses that image as
//! its base, before the child's own instructions, in the child's context; the child image
//! carries no triggers of its own (docker, BuildKit).

use brig_tests::builder::*;
use std::fs;

#[test]
fn onbuild_triggers_run_in_the_child_build_and_are_not_inherited() {
    if !ready("onbuild_triggers_run_in_the_child_build_and_are_not_inherited") {
        return;
    }
    let parent = Ctx::new(&format!(
        "{}\nONBUILD COPY app.txt /app/\nONBUILD RUN cat /app/app.txt > /app/seen && echo $CHILD_ENV >> /app/seen\nRUN echo parent > /parent\n",
        from_base()
    ));
    let dest = format!("type=oci,dest={},name=p:1", parent.path("oci").display());
    parent.build(&["-o", &dest]).assert_ok();
    let pimg = Image::open(&parent.path("oci"), "1");
    assert_eq!(
        pimg.config["config"]["OnBuild"].as_array().map(|a| a.len()),
        Some(2),
        "{}",
        pimg.config
    );
    // The triggers did not run in the parent.
    assert!(!pimg.layer_listing(-1).join("\n").contains("app/"));

    let child = Ctx::new(&format!(
        "FROM oci-layout://{}:1\nENV CHILD_ENV=late\nRUN cat /app/seen > /copy\n",
        parent.path("oci").display()
    ));
    fs::write(child.ctx().join("app.txt"), "from-child-context\n").unwrap();
    let img = child.build_oci(&[]);
    // Triggers ran first (before ENV CHILD_ENV), with the child's context.
    assert_eq!(
        img.layer_file(-1, "copy"),
        "from-child-context\n\n",
        "{}",
        img.config
    );
    assert!(img.config["config"]["OnBuild"].is_null(), "{}", img.config);
    let history: Vec<String> = img.config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str().map(str::to_string))
        .collect();
    assert!(
        history.iter().any(|h| h.contains("COPY app.txt /app/")),
        "{history:?}"
    );

    // A trigger that fails names the child's FROM line.
    let bad = Ctx::new(&format!(
        "FROM oci-layout://{}:1\nRUN true\n",
        parent.path("oci").display()
    ));
    let out = bad.build(&[]);
    out.assert_fail();
    assert!(out.stderr.contains("Dockerfile:1"), "{out}");
    assert!(out.stderr.contains("app.txt"), "{out}");
}
