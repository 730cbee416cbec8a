//! Every SeaORM read API returns the same values cached (a hit) and uncached.

mod common;

use common::*;
use sea_orm::entity::prelude::*;
use sea_orm::{FromQueryResult, QueryOrder, QuerySelect};

#[derive(Debug, FromQueryResult, PartialEq)]
struct TitleOnly {
    id: i32,
    title: String,
}

macro_rules! check {
    ($e:expr, $name:literal, |$db:ident| $body:expr) => {{
        let uncached = {
            let $db = &$e.raw;
            $body.await.expect($name)
        };
        let first = {
            let $db = &$e.db;
            $body.await.expect($name)
        };
        $e.take();
        let second = {
            let $db = &$e.db;
            $body.await.expect($name)
        };
        let queries = $e.take();
        assert_eq!(format!("{uncached:?}"), format!("{first:?}"), "{}: miss differs from the database", $name);
        assert_eq!(format!("{uncached:?}"), format!("{second:?}"), "{}: hit differs from the database", $name);
        assert_eq!(queries, 0, "{} was not served from the cache", $name);
    }};
}

#[tokio::test]
async fn every_read_api_same_cached_and_uncached() {
    let e = env("apis").await;
    check!(e, "find().all", |db| post::Entity::find().order_by_asc(post::Column::Id).all(db));
    check!(e, "find_by_id().one", |db| post::Entity::find_by_id(3).one(db));
    check!(e, "missing one", |db| post::Entity::find_by_id(999).one(db));
    check!(e, "filter().all", |db| post::Entity::find()
        .filter(post::Column::Visible.eq(true))
        .filter(post::Column::AuthorId.is_in([1, 2]))
        .order_by_desc(post::Column::Id)
        .all(db));
    check!(e, "count", |db| post::Entity::find().filter(post::Column::CategoryId.eq(4)).count(db));
    check!(e, "paginate page", |db| post::Entity::find().order_by_asc(post::Column::Id).paginate(db, 3).fetch_page(1));
    check!(e, "paginate num_items", |db| post::Entity::find().paginate(db, 3).num_items());
    check!(e, "find_also_related", |db| post::Entity::find()
        .find_also_related(category::Entity)
        .order_by_asc(post::Column::Id)
        .all(db));
    check!(e, "find_with_related", |db| category::Entity::find()
        .find_with_related(post::Entity)
        .order_by_asc(category::Column::Id)
        .order_by_asc(post::Column::Id)
        .all(db));
    check!(e, "into_model", |db| post::Entity::find()
        .select_only()
        .column(post::Column::Id)
        .column(post::Column::Title)
        .order_by_asc(post::Column::Id)
        .into_model::<TitleOnly>()
        .all(db));
    check!(e, "into_json", |db| post::Entity::find().order_by_asc(post::Column::Id).into_json().all(db));
    check!(e, "into_tuple (positional)", |db| post::Entity::find()
        .select_only()
        .column(post::Column::Title)
        .column(post::Column::Id)
        .column(post::Column::Visible)
        .order_by_asc(post::Column::Id)
        .into_tuple::<(String, i32, bool)>()
        .all(db));
    check!(e, "aggregate", |db| post::Entity::find()
        .select_only()
        .column_as(post::Column::AuthorId.max(), "max_author")
        .column_as(post::Column::Id.sum(), "sum_id")
        .into_tuple::<(Option<i32>, Option<i64>)>()
        .one(db));
}
